"""The stored history (``--history PATH``): one SQLite file with every event and person of every run, a per-slot
tally that reports read, retention, scheduled daily / weekly reports and erasing.

- :mod:`~maskwatch.history.db`: opening the file, its schema, the checks at start;
- :mod:`~maskwatch.history.store`: writing events, deriving people, the tally, deleting old rows;
- :mod:`~maskwatch.history.writer`: the :class:`~maskwatch.history.writer.HistoryWriter` event output (one thread);
- :mod:`~maskwatch.history.query`: periods (hour / day, local time) for ``maskwatch report`` and the HTTP page;
- :mod:`~maskwatch.history.schedule` and :mod:`~maskwatch.history.digest`: the daily and weekly report files;
- :mod:`~maskwatch.history.erase`: ``maskwatch erase``.
"""
