"""The runtime the tests run networks on: the CPU in fp32, made once as an entry point makes it."""
from tedloc.utils.device import Runtime

CPU = Runtime.create("cpu", "fp32")
