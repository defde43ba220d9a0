"""Sensors: NVML GPUs, RAPL CPU/DRAM, psutil models. Each wraps one foreign interface."""
