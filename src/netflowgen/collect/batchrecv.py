"""Many datagrams per interpreter turn: ``recvmmsg(2)`` through ctypes, Linux only.

The collector's receive thread shares the interpreter lock with decoding and writing. A socket
call in Python releases the lock for the system call; at a hundred thousand datagrams a second the
receive thread then waits for it back (up to the switch interval) once per datagram, and the
kernel's buffer overflows while it waits. :class:`BatchReceiver` calls ``recvmmsg`` with
``MSG_DONTWAIT`` through :class:`ctypes.PyDLL`, which keeps the lock for the call (it never
blocks), so one turn takes every datagram the kernel holds, up to ``slots``; only the wait for the
next datagram (``poll``) releases the lock. Where ``recvmmsg`` is missing, :func:`batch_receiver`
returns None and the collector receives one datagram per call, as before.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import socket
import sys

__all__ = ["BatchReceiver", "batch_receiver"]

_MSG_DONTWAIT = 0x40
_NAME_SIZE = 128  # sockaddr_storage


class _IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(_IOVec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t), ("msg_flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


def _recvmmsg() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if not sys.platform.startswith("linux"):
        return None
    try:
        # PyDLL: the interpreter lock is kept during the call (the call never blocks). None: the
        # symbols the interpreter is linked with, the C library's among them.
        libc = ctypes.PyDLL(None, use_errno=True)
        function = libc.recvmmsg
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    function.restype = ctypes.c_int
    return function


class BatchReceiver:
    """Receive up to ``slots`` datagrams of at most ``max_size`` bytes per call from a bound UDP
    socket into buffers of its own.

    >>> s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
    >>> r = batch_receiver(s, slots=4, max_size=64)
    >>> with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
    ...     for text in (b"one", b"two", b"three"):
    ...         _ = out.sendto(text, s.getsockname())
    >>> n = r.receive(1.0)
    >>> [(bytes(r.data(i)), r.sender(i)) for i in range(n)]
    [(b'one', '127.0.0.1'), (b'two', '127.0.0.1'), (b'three', '127.0.0.1')]
    >>> r.receive(0.01), s.close()
    (0, None)
    """

    def __init__(self, sock: socket.socket, recvmmsg: ctypes._CFuncPtr, slots: int = 64, max_size: int = 65_535) -> None:  # type: ignore[name-defined]
        self._fd = sock.fileno()
        self._recvmmsg = recvmmsg
        self.slots, self.max_size = slots, max_size
        self._data = (ctypes.c_char * (slots * max_size))()
        self._names = (ctypes.c_char * (slots * _NAME_SIZE))()
        self._iov = (_IOVec * slots)()
        self._msgs = (_MMsgHdr * slots)()
        base, names = ctypes.addressof(self._data), ctypes.addressof(self._names)
        for i in range(slots):
            self._iov[i].iov_base, self._iov[i].iov_len = base + i * max_size, max_size
            hdr = self._msgs[i].msg_hdr
            hdr.msg_name, hdr.msg_namelen = names + i * _NAME_SIZE, _NAME_SIZE
            hdr.msg_iov, hdr.msg_iovlen = ctypes.pointer(self._iov[i]), 1
        self._data_view = memoryview(self._data).cast("B")
        self._names_view = memoryview(self._names).cast("B")
        # msg_len of every slot: a uint32 view over the headers (one read per datagram, no ctypes object).
        self._lens = memoryview(self._msgs).cast("B").cast("I")
        self._len_stride = ctypes.sizeof(_MMsgHdr) // 4
        self._len_offset = _MMsgHdr.msg_len.offset // 4
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        self._senders: dict[bytes, str] = {}
        self._family = sock.family

    def receive(self, timeout: float) -> int:
        """The number of datagrams now in the slots; waits up to ``timeout`` seconds (releasing
        the interpreter lock) when none is there. Raises ``OSError`` as ``recvfrom`` does."""
        n = self._recvmmsg(self._fd, self._msgs, self.slots, _MSG_DONTWAIT, None)
        if n >= 0:
            return int(n)
        code = ctypes.get_errno()
        if code not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
            raise OSError(code, os.strerror(code))
        self._poll.poll(timeout * 1000)
        return 0

    def data(self, i: int) -> memoryview:
        """Datagram ``i`` of the last :meth:`receive` (valid until the next one)."""
        start = i * self.max_size
        return self._data_view[start:start + self._lens[i * self._len_stride + self._len_offset]]

    def sender(self, i: int) -> str:
        """The source address of datagram ``i``, as ``recvfrom`` gives it."""
        start = i * _NAME_SIZE
        if self._family == socket.AF_INET:
            raw = bytes(self._names_view[start + 4:start + 8])
        else:  # sin6_addr and sin6_scope_id
            raw = bytes(self._names_view[start + 8:start + 28])
        text = self._senders.get(raw)
        if text is None:
            if len(self._senders) > 65_536:  # a bound on what garbage from many addresses can make it hold
                self._senders.clear()
            text = self._senders[raw] = _address_text(self._family, raw)
        return text


def _address_text(family: int, raw: bytes) -> str:
    """The text ``recvfrom`` gives for a source address (IPv6: with ``%scope`` where it has one)."""
    if family == socket.AF_INET:
        return socket.inet_ntop(family, raw)
    text = socket.inet_ntop(family, raw[:16])
    scope = int.from_bytes(raw[16:20], sys.byteorder)
    if scope:
        try:
            text += "%" + socket.if_indextoname(scope)
        except OSError:
            text += f"%{scope}"
    return text


def batch_receiver(sock: socket.socket, slots: int = 64, max_size: int = 65_535) -> BatchReceiver | None:
    """A :class:`BatchReceiver` for ``sock``, or None where ``recvmmsg`` is not available."""
    function = _recvmmsg()
    if function is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    return BatchReceiver(sock, function, slots, max_size)
