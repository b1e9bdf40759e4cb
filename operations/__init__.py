"""Operations: what the operations centre acts on. Hazard status per zone (``status``) first; alarms, incidents,
SOP cards and public warnings build on it (issue 13)."""

__all__: list[str] = []
