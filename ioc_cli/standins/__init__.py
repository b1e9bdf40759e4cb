"""Local stand-ins for the notification channels' receivers (a Standard Webhooks receiver, Zalo ZNS's send API,
a generic SMS gateway, an SMTP server), built on their documented interfaces.

One home for both users: the demo delivers its public warnings to them on loopback, and the tests check the
adapters against them (``tests/standins`` re-exports these). ``smtp`` needs aiosmtpd, a dev extra: import it
only where that is installed.
"""

__all__: list[str] = []
