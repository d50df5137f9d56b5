"""Reproduce a captured handshake from a shell: an equivalent `curl` command.

curl sends custom headers verbatim, so the upgrade request goes out byte for byte as captured
(method, target, every header in order, duplicates included; curl's own `User-Agent` and
`Accept` are suppressed unless the capture had them). The connection goes to the captured
server address; the `Host` header keeps the captured value. Secret values are left raw here:
the reporter masks them (Authorization, tokens in the query) unless `--show-secrets`.
"""

from __future__ import annotations

import shlex

from analyzer.model import Handshake, HttpRequest, Payload

_CURL_DEFAULTS = ("user-agent", "accept")


def _url(hs: Handshake, req: HttpRequest) -> str:
    target = req.target
    if target.startswith(("http://", "https://")):
        return target  # absolute-form (a request to a proxy)
    if not target.startswith("/"):
        target = "/" + target
    scheme = "https" if hs.transport.tls is not None else "http"  # decrypted from TLS: wss://
    return f"{scheme}://{hs.server}{target}"


def _header_args(req: HttpRequest) -> list[str]:
    args: list[str] = []
    names = {n.lower() for n, _ in req.headers}
    for name, value in req.headers:
        # `-H 'Name;'` is curl's syntax for a header with an empty value
        args += ["-H", f"{name}: {value}" if value else f"{name};"]
    for default in _CURL_DEFAULTS:
        if default not in names:
            args += ["-H", f"{default.title()}:"]  # remove the header curl would add
    return args


def curl_command(hs: Handshake, req: HttpRequest) -> str:
    connect = req.method.upper() == "CONNECT"
    args = ["curl", "-sS", "-i", "-N", "--max-time", "10"]
    args.append("--http1.0" if req.version.upper() == "HTTP/1.0" else "--http1.1")
    if req.method != "GET" and not connect:
        args += ["-X", req.method]
    if "host" not in {n.lower() for n, _ in req.headers}:
        args += ["-H", "Host:"]  # the capture had no Host: do not let curl add one
    headers = _header_args(req)
    if connect:  # the CONNECT's own headers go to the proxy
        headers = [("--proxy-header" if a == "-H" else a) for a in headers]
    args += headers
    if req.body:
        args += ["--data-binary", req.body.decode("latin-1")]
    if hs.tunnel is not None or connect:  # through the proxy, as captured: curl opens the tunnel (-p)
        path = "/" if connect or not req.target.startswith("/") else req.target
        args += ["-p", "-x", f"http://{hs.server}", f"http://{hs.tunnel or req.target}{path}"]
    else:
        args.append(_url(hs, req))
    return shlex.join(args)


def command(hs: Handshake) -> str | None:
    """A shell command that replays the handshake's request (or its connection attempt)."""
    if hs.request is not None:
        return curl_command(hs, hs.request)
    t = hs.transport
    if t.client_payload == Payload.TLS:
        return shlex.join(["openssl", "s_client", "-connect", str(hs.server), "-brief"])
    if t.syn:
        return shlex.join(["nc", "-vz", "-w", "5", hs.server.ip, str(hs.server.port)])
    return None
