"""The state one request carries through the gateway: its id, target, caller and body mode."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aiohttp import web
from multidict import CIMultiDictProxy

from store.client import AsyncClient
from store.s3.addressing import Location
from store.s3.auth_common import AuthResult
from store.s3.config import GatewayConfig
from store.s3.credentials import Caller, CredentialCache
from store.s3.request import merge_headers

log = logging.getLogger("store.s3")


@dataclass
class Gateway:
    """The state that every request of one gateway process shares."""

    client: AsyncClient
    credentials: CredentialCache
    config: GatewayConfig


@dataclass
class RequestContext:
    request: web.BaseRequest
    gateway: Gateway
    request_id: str
    location: Location
    # Decoded query parameters; the first value of a repeated name.
    query: dict[str, str]
    operation: str = ""
    caller: Caller | None = None
    auth: AuthResult | None = None
    # Response headers every response of this request gets.
    extra_headers: dict[str, str] = field(default_factory=dict)
    # The request's headers with those a presigned URL carried in its query string.
    _merged_headers: CIMultiDictProxy[str] | None = None

    @property
    def client(self) -> AsyncClient:
        return self.gateway.client

    @property
    def bucket(self) -> str:
        assert self.location.bucket is not None, "operation without a bucket"
        return self.location.bucket

    @property
    def key(self) -> str:
        assert self.location.key is not None, "operation without a key"
        return self.location.key

    @property
    def user(self) -> Caller:
        assert self.caller is not None, "request not authenticated"
        return self.caller

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        if self._merged_headers is not None:
            return self._merged_headers
        return self.request.headers

    def add_signed_query_headers(self, hoisted: list[tuple[str, str]]) -> None:
        """Read `hoisted`, headers that the signed query string carries, as request headers.

        Each replaces a header of the same name, which the signature does not cover.
        """
        self._merged_headers = CIMultiDictProxy(merge_headers(self.request.headers, hoisted))
