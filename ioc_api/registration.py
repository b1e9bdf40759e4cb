"""The rules of registering a device that are not SQL: which codec decodes it, where ChirpStack keeps it.

Read by the device writes (``ioc_api.queries.device_writes``) and the CSV import; the catalogue of models and
codecs comes from the ingest's codec library, the ChirpStack mapping from ``IOC_CHIRPSTACK_PROFILES``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ioc_core.catalogue import DeviceCatalogue
from ioc_core.errors import Invalid
from ioc_core.settings import ChirpStackSettings

__all__ = ["RegistrationRules"]


@dataclass(frozen=True, slots=True)
class RegistrationRules:
    """What registering needs besides the database: the known models and codecs, and ChirpStack's mapping."""

    catalogue: DeviceCatalogue
    chirpstack: ChirpStackSettings

    def codec_for(self, model: str, codec_id: str | None) -> str:
        """The codec a device of ``model`` decodes with: the one named, else the model's."""
        catalogue = self.catalogue
        if codec_id is not None:
            if codec_id not in catalogue.codecs:
                raise Invalid(f"codec {codec_id!r} does not exist", field="codec_id")
            return codec_id
        found = catalogue.models.get(model)
        if found is None:
            known = ", ".join(sorted(catalogue.models)) or "none"
            raise Invalid(f"model {model!r} is unknown to every codec (known: {known}); name a codec_id",
                          field="model")
        return found

    def chirpstack_target(self, model: str) -> tuple[str | None, str | None, str]:
        """(application_id, device_profile_id, provisioning state) for a model."""
        settings = self.chirpstack
        if not settings.enabled:
            return None, None, "not_configured"
        target = settings.target_for(model)
        if target is None:
            raise Invalid(f"no ChirpStack application and device profile are configured for model {model!r}",
                          field="model")
        return str(target.application_id), str(target.device_profile_id), "pending"
