"""Ops that misbehave on purpose, loaded as a plugin (``DARKROOM_PLUGINS``) by the tests."""

import os
import signal
import time

from imaging.ops import register


@register("explode", "Raise an exception")
def explode(im):
    raise RuntimeError("the op exploded")


@register("die", "Get killed by SIGKILL")
def die(im):
    os.kill(os.getpid(), signal.SIGKILL)


@register("hog", "Allocate 8 GiB")
def hog(im):
    hoard = bytearray(8 * 1024**3)
    return im if hoard else im


@register("stall", "Sleep 30 s")
def stall(im):
    time.sleep(30)
    return im


@register("slow", "Sleep 0.6 s")
def slow(im):
    time.sleep(0.6)
    return im.copy()


@register("nap", "Sleep 3 s")
def nap(im):
    time.sleep(3)
    return im.copy()
