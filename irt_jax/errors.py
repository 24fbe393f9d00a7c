"""The one base class of a user's mistake (a bad file, flag, config or run).

Every error a user can fix subclasses `UserError` (DataError, ConfigError,
CheckpointError, TrainingError, EncoderError, RouterError, FeedbackError, the
serving keys / upstreams errors, ...), most of them also a ValueError or
RuntimeError as before. The command-line tools (irt_jax/cli/) catch this one
class and print its message as one line with a non-zero exit, no traceback.
"""


class UserError(Exception):
  """Something the user can fix; the message names the file, field or flag and what to do."""
