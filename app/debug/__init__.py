"""The debug views: the panel, its pages (anchors, assignment, loss, NMS, dataset scan), the overlay."""
