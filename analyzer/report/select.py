"""Which handshakes and OTA exchanges a report shows (`--failed`, `--client`).

A fleet capture holds hundreds of attempts, most of them fine; the person asking "why does
*this* device fail" wants its attempts, or only the failures. The selection narrows what is
printed, never what is analysed: rules still see the whole capture (OTA correlation, proxy
legs) and the summary still counts everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.model import Diagnosis, Endpoint, HttpRequest, OtaDiagnosis, is_failure


@dataclass(frozen=True, slots=True)
class Selection:
    failed_only: bool = False
    clients: tuple[str, ...] = ()  # IP addresses, MACs or Device-Ids (any case)

    def keep(self, d: Diagnosis) -> bool:
        hs = d.handshake
        if self.failed_only and not is_failure(d):
            return False
        return self._is_client(hs.client, hs.client_mac, hs.request)

    def keep_ota(self, o: OtaDiagnosis) -> bool:
        if self.failed_only and o.cause is None:
            return False
        return self._is_client(o.exchange.client, o.exchange.client_mac, o.exchange.request)

    def _is_client(self, client: Endpoint, mac: str | None, request: HttpRequest | None) -> bool:
        if not self.clients:
            return True
        device = (request.header("device-id") or "").strip() if request is not None else ""
        names = {client.ip.lower(), (mac or "").lower(), device.lower()} - {""}
        return any(c.strip().lower() in names for c in self.clients)


EVERYTHING = Selection()
