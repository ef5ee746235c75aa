from .conv import Conv1d, ConvTranspose1d, pad1d, receptive_field
from .seanet import LSTM, ResidualUnit, SEANetDecoder, SEANetEncoder, Snake
from .spectral import ConvNeXtBlock, SpectralDecoder, SpectralEncoder

__all__ = ["Conv1d", "ConvNeXtBlock", "ConvTranspose1d", "LSTM", "ResidualUnit", "SEANetDecoder", "SEANetEncoder",
           "Snake", "SpectralDecoder", "SpectralEncoder", "pad1d", "receptive_field"]
