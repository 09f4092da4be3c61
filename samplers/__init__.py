"""Runge-Kutta ODE samplers: tableaux as data (tableaux.py), the solvers (ode.py), the ComfyUI adapter."""
