"""The annotation editor: canvas, boxes, undo commands, the document, image and class lists."""
