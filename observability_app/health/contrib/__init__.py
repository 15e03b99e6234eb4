"""Health checks of optional services through their own client libraries, each behind an extra.

- :class:`observability_app.health.contrib.redis.RedisCheck` (extra ``[redis]``, redis-py): ``redis://`` and
  ``rediss://`` (TLS) URLs, ACL users (``redis://user:password@host``), ``PING`` on a fresh connection.
- :class:`observability_app.health.contrib.amqp.AmqpCheck` (extra ``[amqp]``, kombu): ``amqp://`` and
  ``amqps://`` URLs, a full AMQP connection handshake (protocol header, authentication, virtual host).

List one in ``OBSERVABILITY["HEALTH_CHECKS"]`` instead of the built-in ``QueueCheck``; both read
``HEALTH_QUEUE_URL`` and report as ``queue``. Importing one without its extra raises ``ImproperlyConfigured``
naming the pip line (``manage.py check`` reports it as ``observability_app.E030``).
"""

__all__: list[str] = []
