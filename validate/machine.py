"""The name of the CPU a result was measured on, for results files."""
import platform


def cpu_name() -> str:
    """The CPU model: platform.processor() is empty on Linux, where the kernel's cpuinfo names it."""
    try:
        with open('/proc/cpuinfo') as f:
            names = [line.split(':', 1)[1].strip() for line in f if line.startswith('model name')]
    except OSError:
        names = []
    return names[0] if names else platform.processor()
