"""The files a web session's process keeps in its private directory for the door: its pid
(how the door finds it to end it) and its standard error (logged should the monitor fail).
Shared by the door and the process, which imports nothing else of the door."""

PID_FILE = "pid"
STDERR_FILE = "stderr.log"
