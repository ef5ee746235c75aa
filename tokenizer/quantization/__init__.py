from .rvq import QuantizedResult, ResidualVectorQuantizer
from .vq import EMAVectorQuantizer, FactorizedVectorQuantizer, LevelResult, kmeans

__all__ = ["EMAVectorQuantizer", "FactorizedVectorQuantizer", "LevelResult", "QuantizedResult",
           "ResidualVectorQuantizer", "kmeans"]
