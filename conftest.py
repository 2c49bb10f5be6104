# The repository root holds this file, so pytest puts the root on sys.path and
# tests import `analysis`, `app`, `views` and `scenarios` as the application
# does. The Qt binding is chosen here, before pytest-qt or qtpy load one.
from app.qt_binding import choose_binding

choose_binding()
