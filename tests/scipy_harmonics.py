"""Reference spherical harmonics from SciPy, in the convention of glasslab.harmonics."""

import numpy as np
import scipy.special


def sph_harm_complex(l, m, theta, phi):
    """scipy's complex orthonormal Y_l^m (Condon–Shortley phase), θ polar, φ azimuth."""
    if hasattr(scipy.special, "sph_harm_y"):
        return scipy.special.sph_harm_y(l, m, theta, phi)
    return scipy.special.sph_harm(m, l, phi, theta)  # scipy < 1.15: other argument order


def sph_harm_real(l, m, theta, phi):
    """Real orthonormal Y_lm from the complex ones (the convention stated in glasslab.harmonics)."""
    if m == 0:
        return sph_harm_complex(l, 0, theta, phi).real
    y = sph_harm_complex(l, abs(m), theta, phi)
    return np.sqrt(2.0) * (-1) ** abs(m) * (y.real if m > 0 else y.imag)
