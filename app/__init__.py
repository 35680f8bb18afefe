"""DetScope desktop app (PySide6 + pyqtgraph) over the Qt-free ``detengine``."""
