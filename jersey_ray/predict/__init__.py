"""``python -m jersey_ray.predict``: a trained model on a folder of tracklets, without Ray or a
cache. :mod:`~jersey_ray.predict.read` reads the folder, :mod:`~jersey_ray.predict.run` runs
the model, :mod:`~jersey_ray.predict.aggregate` turns sequences into tracks and files."""
