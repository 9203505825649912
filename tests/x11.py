"""Just enough Xlib, through ctypes, for the window tests: read the screen back and press a key (XTEST).

Needs libX11 and libXtst (Debian's x11-utils pulls both in beside xdpyinfo)."""

from __future__ import annotations

import ctypes

import numpy as np


class _XImage(ctypes.Structure):
    _fields_ = [  # noqa: RUF012 - ctypes layout, the head of Xlib's XImage
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("xoffset", ctypes.c_int),
        ("format", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("byte_order", ctypes.c_int),
        ("bitmap_unit", ctypes.c_int),
        ("bitmap_bit_order", ctypes.c_int),
        ("bitmap_pad", ctypes.c_int),
        ("depth", ctypes.c_int),
        ("bytes_per_line", ctypes.c_int),
        ("bits_per_pixel", ctypes.c_int),
    ]


class X11:
    """One connection to an X server (``display``, e.g. ``":5"``)."""

    def __init__(self, display: str) -> None:
        self.xlib = ctypes.CDLL("libX11.so.6")
        self.xtst = ctypes.CDLL("libXtst.so.6")
        x = self.xlib
        x.XOpenDisplay.restype = ctypes.c_void_p
        x.XOpenDisplay.argtypes = [ctypes.c_char_p]
        x.XDefaultRootWindow.restype = ctypes.c_ulong
        x.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        x.XDisplayWidth.argtypes = x.XDisplayHeight.argtypes = [ctypes.c_void_p, ctypes.c_int]
        x.XGetImage.restype = ctypes.POINTER(_XImage)
        x.XGetImage.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_int, ctypes.c_uint,
                                ctypes.c_uint, ctypes.c_ulong, ctypes.c_int]  # fmt: skip
        x.XStringToKeysym.restype = ctypes.c_ulong
        x.XStringToKeysym.argtypes = [ctypes.c_char_p]
        x.XKeysymToKeycode.restype = ctypes.c_ubyte
        x.XKeysymToKeycode.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
        x.XFlush.argtypes = x.XCloseDisplay.argtypes = x.XFree.argtypes = [ctypes.c_void_p]
        self.xtst.XTestFakeKeyEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong]
        self.xtst.XTestFakeMotionEvent.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                                   ctypes.c_ulong]  # fmt: skip
        self.dpy = x.XOpenDisplay(display.encode())
        if not self.dpy:
            raise OSError(f"cannot open X display {display}")

    def screenshot(self) -> np.ndarray:
        """The whole screen as a BGR image (24-bit visual, 32 bits per pixel, little-endian)."""
        w, h = self.xlib.XDisplayWidth(self.dpy, 0), self.xlib.XDisplayHeight(self.dpy, 0)
        root = self.xlib.XDefaultRootWindow(self.dpy)
        image = self.xlib.XGetImage(self.dpy, root, 0, 0, w, h, ctypes.c_ulong(-1).value, 2)  # ZPixmap
        head = image.contents
        assert head.bits_per_pixel == 32, head.bits_per_pixel
        height, stride = head.height, head.bytes_per_line
        raw = ctypes.string_at(head.data, stride * height)
        self.xlib.XFree(head.data)
        self.xlib.XFree(image)
        rows = np.frombuffer(raw, np.uint8).reshape(height, stride // 4, 4)
        return np.ascontiguousarray(rows[:, :w, :3])

    def press(self, key: str, at: tuple[int, int]) -> None:
        """Move the pointer to ``at`` (focus follows it without a window manager) and press and release ``key``."""
        self.xtst.XTestFakeMotionEvent(self.dpy, -1, at[0], at[1], 0)
        code = self.xlib.XKeysymToKeycode(self.dpy, self.xlib.XStringToKeysym(key.encode()))
        self.xtst.XTestFakeKeyEvent(self.dpy, code, 1, 0)
        self.xtst.XTestFakeKeyEvent(self.dpy, code, 0, 0)
        self.xlib.XFlush(self.dpy)

    def close(self) -> None:
        self.xlib.XCloseDisplay(self.dpy)
