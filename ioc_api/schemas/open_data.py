"""The open-data catalogue as DCAT in JSON-LD: a ``dcat:Catalog`` of one ``dcat:Dataset`` per device kind and zone.

Field names are Python's; the JSON keys are the vocabulary terms (``serialization_alias``), so the document is
built with checked names and read as JSON-LD. Nothing here can carry a secret: a dataset names a kind, a zone,
counts and links, never a device's tags, keys, payloads or provisioning.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

__all__ = [
    "CONTEXT",
    "Catalogue",
    "Dataset",
    "Distribution",
    "Location",
    "Period",
    "Variable",
]

CONTEXT: dict[str, str | dict[str, str]] = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "schema": "https://schema.org/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "dct:license": {"@type": "@id"},
    "dcat:downloadURL": {"@type": "@id"},
    "dcat:accessURL": {"@type": "@id"},
    "dct:accrualPeriodicity": {"@type": "xsd:duration"},
    "dcat:temporalResolution": {"@type": "xsd:duration"},
    "dcat:startDate": {"@type": "xsd:dateTime"},
    "dcat:endDate": {"@type": "xsd:dateTime"},
    "dct:modified": {"@type": "xsd:dateTime"},
}
"""The JSON-LD context, without the ``ioc`` prefix, which names the catalogue's own URL (``#`` terms)."""


class _JsonLd(BaseModel):
    """Serialise with ``by_alias=True``: the aliases are the JSON-LD terms."""


class Variable(_JsonLd):
    type: Literal["schema:PropertyValue"] = Field(default="schema:PropertyValue", serialization_alias="@type")
    name: str = Field(serialization_alias="schema:name", examples=["temperature"])
    unit: str = Field(serialization_alias="schema:unitText", description="SenML unit name (RFC 8428, RFC 8798)",
                      examples=["Cel"])
    description: str = Field(serialization_alias="schema:description", examples=["air temperature"])


class Location(_JsonLd):
    type: Literal["dct:Location"] = Field(default="dct:Location", serialization_alias="@type")
    code: str = Field(serialization_alias="dct:identifier", examples=["hai-chau"])
    name: str = Field(serialization_alias="schema:name", examples=["Hải Châu"])
    level: str = Field(serialization_alias="ioc:level", examples=["district"])


class Period(_JsonLd):
    type: Literal["dct:PeriodOfTime"] = Field(default="dct:PeriodOfTime", serialization_alias="@type")
    start: datetime = Field(serialization_alias="dcat:startDate", description="start of the first hour with data")
    end: datetime = Field(serialization_alias="dcat:endDate", description="end of the last hour with data")


class Distribution(_JsonLd):
    type: Literal["dcat:Distribution"] = Field(default="dcat:Distribution", serialization_alias="@type")
    title: str = Field(serialization_alias="dct:title")
    download_url: str | None = Field(default=None, serialization_alias="dcat:downloadURL")
    media_type: str | None = Field(default=None, serialization_alias="dcat:mediaType", examples=["text/csv"])
    format: str | None = Field(default=None, serialization_alias="dct:format", examples=["CSV"])
    topic_filters: list[str] | None = Field(default=None, serialization_alias="ioc:topicFilter",
                                            description="MQTT topic filters of the live feed: one per zone the "
                                            "dataset's devices are placed in (a district's and its wards')",
                                            examples=[["ioc/v1/hai-chau/water_level/#"]])


class Dataset(_JsonLd):
    id: str = Field(serialization_alias="@id")
    type: Literal["dcat:Dataset"] = Field(default="dcat:Dataset", serialization_alias="@type")
    identifier: str = Field(serialization_alias="dct:identifier", examples=["hai-chau/water_level"])
    title: str = Field(serialization_alias="dct:title", examples=["Water level stations, Hải Châu"])
    description: str = Field(serialization_alias="dct:description")
    license: str = Field(serialization_alias="dct:license")
    accrual_periodicity: str = Field(serialization_alias="dct:accrualPeriodicity",
                                     description="the kind's reporting interval as an ISO 8601 duration",
                                     examples=["PT5M"])
    temporal_resolution: str = Field(serialization_alias="dcat:temporalResolution", examples=["PT5M"])
    kind: str = Field(serialization_alias="ioc:kind", examples=["water_level"])
    device_count: int = Field(serialization_alias="ioc:deviceCount", description="public devices reporting")
    keywords: list[str] = Field(serialization_alias="dcat:keyword")
    spatial: Location = Field(serialization_alias="dct:spatial")
    temporal: Period | None = Field(default=None, serialization_alias="dct:temporal",
                                    description="absent until the devices have reported")
    variables: list[Variable] = Field(serialization_alias="schema:variableMeasured")
    distributions: list[Distribution] = Field(serialization_alias="dcat:distribution")


class Catalogue(_JsonLd):
    context: dict[str, str | dict[str, str]] = Field(serialization_alias="@context")
    id: str = Field(serialization_alias="@id")
    type: Literal["dcat:Catalog"] = Field(default="dcat:Catalog", serialization_alias="@type")
    title: str = Field(serialization_alias="dct:title")
    description: str = Field(serialization_alias="dct:description")
    license: str = Field(serialization_alias="dct:license")
    modified: datetime = Field(serialization_alias="dct:modified")
    datasets: list[Dataset] = Field(serialization_alias="dcat:dataset")
