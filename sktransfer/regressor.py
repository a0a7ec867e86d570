"""Former home of :class:`~sktransfer.FineTuneRegressor`; import it from ``sktransfer``.

An alias kept so that models pickled by sktransfer 0.1, which name this module, load.
"""

from ._moved import moved

__getattr__ = moved(__name__)


__all__ = []
