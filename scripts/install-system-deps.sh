#!/usr/bin/env bash
# System packages the suite starts for real: Prometheus (with promtool) and its Pushgateway (started by the worker
# test on a port of its own; the package's service is not used), headless Chromium with its driver,
# redis-server (the health probe's queue check and the Celery worker tests talk to a real one; redis-cli comes with it
# and .ci/run uses it to start the server when it is down) and rabbitmq-server (a Celery worker test on an AMQP
# broker; .ci/run starts it when it is down).
# Idempotent: installs only what is missing. Needs root (or sudo) and Debian's package registry.
set -euo pipefail

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-pushgateway >/dev/null 2>&1 || need+=(prometheus-pushgateway)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/sbin/rabbitmq-server ] || need+=(rabbitmq-server)
if [ ${#need[@]} -eq 0 ]; then
  echo "system deps: prometheus, promtool, prometheus-pushgateway, chromium, chromedriver, redis-server, rabbitmq-server present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "system deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u)
