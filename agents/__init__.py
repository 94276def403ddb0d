"""The Faust app and its agents: thin policy around the streamproc library."""
