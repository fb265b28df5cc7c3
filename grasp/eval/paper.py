"""The paper's published numbers (Psenka et al., ICML 2026), for printing beside ours."""

from __future__ import annotations

#: Table 1: open-loop Push-T, success % / median seconds to success over 500 trials, by horizon in
#: env steps (DINO-WM's frameskip-5 model) and planner; None where no trial succeeded
TABLE1: dict[int, dict[str, tuple[float, float | None]]] = {
    40: {"cem": (61.4, 35.3), "gd": (51.0, 18.0), "latco": (15.0, 598.0), "grasp": (59.0, 8.5)},
    50: {"cem": (30.2, 96.2), "gd": (37.6, 76.3), "latco": (4.2, 1114.7), "grasp": (43.4, 15.2)},
    60: {"cem": (7.2, 83.1), "gd": (16.4, 146.5), "latco": (2.0, 231.5), "grasp": (26.2, 49.1)},
    70: {"cem": (7.8, 156.1), "gd": (12.0, 103.1), "latco": (0.0, None), "grasp": (16.0, 79.9)},
    80: {"cem": (2.8, 132.2), "gd": (6.4, 161.3), "latco": (0.0, None), "grasp": (10.4, 58.9)},
}
