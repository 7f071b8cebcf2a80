"""v2 shapes. Routes are v1's route code built for v2 (``jobs_router("v2")``), not copies."""
