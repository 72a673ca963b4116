"""``reloop study``: the loop run over the same periods once per arm, and what each arm served.

* :mod:`.spec`: the study spec (arms as parameter overrides) and its validation;
* :mod:`.run`: one workspace and one worker process per arm, resumable;
* :mod:`.metrics`: per period, what the arm actually served, against the labels and the oracle;
* :mod:`.stats`: paired bootstrap intervals over periods;
* :mod:`.report`: the JSON, markdown table and PNG plots.
"""
