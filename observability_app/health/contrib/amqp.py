"""The queue through kombu: a real AMQP handshake (protocol, login, virtual host), not only a TCP connect."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

try:
    import kombu
    from amqp.exceptions import AccessRefused, NotAllowed
except ImportError as exc:  # the extra is not installed
    raise ImproperlyConfigured(
        "observability_app.health.contrib.amqp needs kombu: pip install 'observability_app[amqp]'"
    ) from exc

from ...conf import settings
from ..base import HealthCheck, HealthCheckFailed

__all__ = ["AmqpCheck"]


class AmqpCheck(HealthCheck):
    """Opens and closes an AMQP connection to ``HEALTH_QUEUE_URL`` (``amqp://`` or ``amqps://``), bounded in time.

    The broker must accept the protocol header, the user's credentials and the virtual host
    (``amqp://user:password@host:5672/vhost``): a port that answers TCP but is not the broker, a wrong password or a
    missing virtual host fail the check.
    """

    name = "queue"
    url_setting = "HEALTH_QUEUE_URL"

    def check(self) -> None:
        url = getattr(settings, self.url_setting)
        if not url or not str(url).lower().startswith(("amqp://", "amqps://", "pyamqp://")):
            raise HealthCheckFailed(f"{self.url_setting} is not an amqp:// or amqps:// URL")
        timeout = self.timeout or settings.HEALTH_CHECK_TIMEOUT
        connection = kombu.Connection(
            url,
            connect_timeout=timeout,
            ssl=str(url).lower().startswith("amqps://"),
            heartbeat=0,
            transport_options={"max_retries": 0, "read_timeout": timeout, "write_timeout": timeout},
        )
        try:
            connection.connect()
            if not connection.connected:
                raise HealthCheckFailed("the AMQP broker did not complete the handshake")
        except AccessRefused:
            raise HealthCheckFailed("the AMQP broker refused the credentials") from None
        except NotAllowed:
            raise HealthCheckFailed("the AMQP broker refused the virtual host") from None
        except HealthCheckFailed:
            raise
        except Exception as exc:  # socket errors, timeouts, a peer that does not speak AMQP
            raise HealthCheckFailed(f"the AMQP broker cannot be reached ({type(exc).__name__})") from None
        finally:
            connection.release()
