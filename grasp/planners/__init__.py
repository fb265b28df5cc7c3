"""Planners behind one batch-first interface (see base.Planner)."""

from grasp.planners.base import PlanResult, Planner, shift_plan

__all__ = ["PlanResult", "Planner", "shift_plan"]
