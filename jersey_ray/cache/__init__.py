"""The preprocessed cache: a data root decoded once into verified Parquet shards, and read back
onto the training device.

- :mod:`~jersey_ray.cache.plan`: index, frame selection, split, the cache's name and fingerprint
  (all from one :class:`~jersey_ray.config.DataConfig`);
- :mod:`~jersey_ray.cache.decode`: image decoding and letterboxing (what Ray workers run);
- :mod:`~jersey_ray.cache.store`: the manifest, verification, atomic installation;
- :mod:`~jersey_ray.cache.build`: the Ray Data build;
- :mod:`~jersey_ray.cache.loader`: a split as device tensors, and the batches drawn from it;
- :mod:`~jersey_ray.cache.augment`: the reference's train augmentations, on the device.

Nothing is imported here: Ray workers import :mod:`~jersey_ray.cache.decode` without torch.
"""
