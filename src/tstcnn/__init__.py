"""tstcnn: the Twin Spatio-Temporal CNN with 3D attention (Martin et al., ICPR 2020), end to end."""

__version__ = "0.1.0"
