"""SRT (Secure Reliable Transport), the receiving side, sans-I/O.

``packet`` holds the wire formats, ``handshake`` the stateless listener (SYN cookies, HSv5 with
the stream id extension), ``receiver`` one connection's receive buffer (ACK/ACKACK, NAK loss
reports, TSBPD delivery with too-late drop, keepalive and shutdown). Datagrams go in as bytes
with the current time; datagrams to send and delivered payloads come out. No sockets here.
"""
