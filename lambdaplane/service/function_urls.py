"""Function URL configurations: Create/Get/Update/Delete/ListFunctionUrlConfigs on $LATEST or
an alias (AuthType, Cors, InvokeMode), each with a 32-character url id that names it in
`http://<url-id>.lambda-url.<region>.localhost:<port>/`; and finding a configuration by its url
id for the HTTP side (api/function_urls.py). Stored as extras (store/versions.py). No HTTP."""
from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import InvalidParameterValue, ResourceConflict, ResourceNotFound
from .versions import LATEST, paginate

if TYPE_CHECKING:
    from .functions import FunctionService

URL = "url"
URL_ID_ALPHABET = string.ascii_lowercase + string.digits
HTTP_METHODS = frozenset({"GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS", "*"})


def url_timestamp() -> str:
    """Function URLs' CreationTime/LastModifiedTime format: 2026-12-06T10:00:00.000000Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class UrlConfig:
    region: str
    function: str
    qualifier: str  # "" for $LATEST, else an alias name
    url_id: str
    function_arn: str
    auth_type: str
    creation_time: str
    last_modified_time: str
    invoke_mode: str = "BUFFERED"
    cors: dict[str, Any] = field(default_factory=dict)

    def to_document(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> UrlConfig:
        return cls(**document)


def check_cors(cors: dict[str, Any]) -> None:
    bad = sorted(m for m in cors.get("AllowMethods") or [] if m.upper() not in HTTP_METHODS)
    if bad:
        raise InvalidParameterValue(
            f"Cors.AllowMethods contains an invalid HTTP method: {', '.join(bad)}")
    if cors.get("MaxAge") is not None and not 0 <= cors["MaxAge"] <= 86400:
        raise InvalidParameterValue("Cors.MaxAge must be between 0 and 86400")


class FunctionUrls:
    def __init__(self, functions: FunctionService) -> None:
        self.functions = functions
        self.store = functions.versions.store

    def url(self, config: UrlConfig) -> str:
        return (f"http://{config.url_id}.lambda-url.{config.region}.localhost:"
                f"{self.functions.settings.port}/")

    def _target(self, region: str, ref: str, qualifier: str | None) -> tuple[str, str, str]:
        """(function name, key, the ARN URLs report) for $LATEST or an existing alias."""
        name, qualifier = self.functions.resolve(region, ref, qualifier)
        if qualifier and (qualifier == LATEST or qualifier.isdigit()):
            raise InvalidParameterValue(
                "Function URLs can be created on $LATEST (unqualified) or on an alias, not on "
                f"a version: {self.functions.arn(region, name, qualifier)}")
        self.functions.get(region, name, qualifier)  # ResourceNotFound
        key = qualifier or ""
        return name, key, self.functions.arn(region, name, key or None)

    def create(self, region: str, ref: str, qualifier: str | None,
               p: dict[str, Any]) -> UrlConfig:
        name, key, arn = self._target(region, ref, qualifier)
        if self.store.extra(region, name, key, URL) is not None:
            raise ResourceConflict(
                f"Failed to create function url config for [functionArn = {arn}]. Error "
                f"message:  FunctionUrlConfig exists for this Lambda function")
        check_cors(p.get("Cors") or {})
        now = url_timestamp()
        url_id = "".join(secrets.choice(URL_ID_ALPHABET) for _ in range(32))
        config = UrlConfig(region, name, key, url_id, arn, p["AuthType"], now, now,
                           p.get("InvokeMode", "BUFFERED"), dict(p.get("Cors") or {}))
        self.store.put_extra(region, name, key, URL, config.to_document())
        return config

    def get(self, region: str, ref: str, qualifier: str | None) -> UrlConfig:
        name, key, _ = self._target(region, ref, qualifier)
        document = self.store.extra(region, name, key, URL)
        if document is None:
            raise ResourceNotFound("The resource you requested does not exist.")
        return UrlConfig.from_document(document)

    def update(self, region: str, ref: str, qualifier: str | None,
               p: dict[str, Any]) -> UrlConfig:
        config = self.get(region, ref, qualifier)
        if "Cors" in p:
            check_cors(p["Cors"] or {})
            config.cors = dict(p["Cors"] or {})
        config.auth_type = p.get("AuthType", config.auth_type)
        config.invoke_mode = p.get("InvokeMode", config.invoke_mode)
        config.last_modified_time = url_timestamp()
        self.store.put_extra(config.region, config.function, config.qualifier, URL,
                             config.to_document())
        return config

    def delete(self, region: str, ref: str, qualifier: str | None) -> None:
        config = self.get(region, ref, qualifier)
        self.store.delete_extra(config.region, config.function, config.qualifier, URL)

    def page(self, region: str, ref: str, marker: str | None,
             max_items: int | None) -> tuple[list[UrlConfig], str | None]:
        name = self.functions.versions.unqualified(region, ref)
        self.functions.get(region, name)
        configs = [UrlConfig.from_document(d)
                   for _r, _n, _q, d in self.store.extras(URL, region, name)]
        return paginate(configs, marker, max_items, lambda c: c.url_id)

    def by_id(self, url_id: str) -> UrlConfig | None:
        """The configuration a request's url id names (None: no such URL)."""
        document = self.store.find_extra(URL, "url_id", url_id)
        return UrlConfig.from_document(document) if document is not None else None
