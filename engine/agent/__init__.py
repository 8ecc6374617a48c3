"""The agent's loops: executing jobs, firing schedules, archiving and streaming WAL,
measuring objectives. ``lifeboat agent`` (in lifeboat/) only starts them."""
