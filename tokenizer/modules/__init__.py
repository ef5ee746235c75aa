from .conv import Conv1d, ConvTranspose1d, pad1d, receptive_field
from .seanet import LSTM, ResidualUnit, SEANetDecoder, SEANetEncoder, Snake

__all__ = ["Conv1d", "ConvTranspose1d", "LSTM", "ResidualUnit", "SEANetDecoder", "SEANetEncoder", "Snake",
           "pad1d", "receptive_field"]
