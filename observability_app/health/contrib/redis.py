"""The queue (or any Redis) through redis-py: TLS with ``rediss://``, ACL users, a real ``PING``."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

try:
    import redis
except ImportError as exc:  # the extra is not installed
    raise ImproperlyConfigured(
        "observability_app.health.contrib.redis needs redis-py: pip install 'observability_app[redis]'"
    ) from exc

from ...conf import settings
from ..base import HealthCheck, HealthCheckFailed

__all__ = ["RedisCheck"]


class RedisCheck(HealthCheck):
    """``PING`` on a new connection to ``HEALTH_QUEUE_URL`` (``redis://`` or ``rediss://``), bounded in time.

    The URL takes what redis-py's ``from_url`` takes: ``rediss://user:password@host:6380/0?ssl_ca_certs=/ca.pem``
    (``ssl_cert_reqs=none`` only for a test broker). A fresh connection every run, so that a broker that restarted,
    or changed its credentials, is seen.
    """

    name = "queue"
    url_setting = "HEALTH_QUEUE_URL"

    def check(self) -> None:
        url = getattr(settings, self.url_setting)
        if not url or not str(url).lower().startswith(("redis://", "rediss://", "unix://")):
            raise HealthCheckFailed(f"{self.url_setting} is not a redis:// or rediss:// URL")
        timeout = self.timeout or settings.HEALTH_CHECK_TIMEOUT
        client = None
        try:  # single_connection_client connects (and authenticates) here already
            client = redis.Redis.from_url(
                url,
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
                retry_on_timeout=False,
                single_connection_client=True,
            )
            if client.ping() is not True:
                raise HealthCheckFailed("Redis did not answer PING")
        except redis.AuthenticationError:
            raise HealthCheckFailed("Redis refused the credentials") from None
        except redis.ResponseError as exc:  # NOAUTH, NOPERM: the user may not PING
            raise HealthCheckFailed(f"Redis refused PING ({str(exc).split(' ', 1)[0]})") from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise HealthCheckFailed(f"Redis cannot be reached ({type(exc).__name__})") from None
        finally:
            if client is not None:
                client.close()
