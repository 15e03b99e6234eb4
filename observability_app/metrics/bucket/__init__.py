"""The bucket catalog in one package: the design's ``bucket.{component}.{operation}.{kind}`` metrics.

* :mod:`.catalog`: the table (dotted name, Prometheus name, kind, labels, allowed values, buckets): the single source
  of truth that docs/metrics.md prints;
* :mod:`.families`: the Prometheus metrics built from it;
* :mod:`.recording`: the helper API projects record with (public as ``observability_app.bucket_metrics``);
* :mod:`.storage`: storage reporters and the scrape-time gauges summed per bucket bin.

Series primed at zero live with the HTTP ones in :mod:`observability_app.metrics.priming`; id binning in
:mod:`observability_app.metrics.labels`.
"""
