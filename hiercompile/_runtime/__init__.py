"""Running tagged graphs: the ``torch.compile`` backend (``_backend``)."""
