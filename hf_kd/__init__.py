from hf_kd.trainers import TRAINERS, trainer_class

__version__ = "0.1.0"
__all__ = ["TRAINERS", "__version__", "trainer_class"]
