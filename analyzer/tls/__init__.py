"""TLS without re-implementing TLS: cleartext handshake facts (versions, SNI, ALPN, certificates,
alerts) read from the reassembled bytes, X.509 through `cryptography`, and key logs handed to
tshark for decryption (`analyzer.tls.decrypt`). Nothing here ever prints key material.
"""
