from .scheduling_flow_match import (
    SoraFlowMatchScheduler,
    calculate_shift,
    shift_sigmas,
    time_shift_sigmas,
)


__all__ = ["SoraFlowMatchScheduler", "calculate_shift", "shift_sigmas", "time_shift_sigmas"]
