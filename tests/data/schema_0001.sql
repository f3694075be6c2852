-- The schema a database had before migrations existed (git 33a03f4, Alembic revision
-- 0001), dumped from that commit's app/models.py by SQLAlchemy's create_all on SQLite.

CREATE TABLE studies (
	id INTEGER NOT NULL,
	name VARCHAR(200) NOT NULL,
	mode VARCHAR(16) NOT NULL,
	task VARCHAR(100) NOT NULL,
	task_options JSON NOT NULL,
	space JSON NOT NULL,
	objective_metric VARCHAR(100) NOT NULL,
	direction VARCHAR(16) NOT NULL,
	sampler VARCHAR(50) NOT NULL,
	scheduler VARCHAR(50),
	budget_trials INTEGER NOT NULL,
	epochs INTEGER NOT NULL,
	parallelism INTEGER NOT NULL,
	seed INTEGER NOT NULL,
	state VARCHAR(16) NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id)
);

CREATE TABLE rounds (
	id INTEGER NOT NULL,
	study_id INTEGER NOT NULL,
	number INTEGER NOT NULL,
	space JSON NOT NULL,
	parent_round_id INTEGER,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (study_id, number),
	FOREIGN KEY(study_id) REFERENCES studies (id) ON DELETE CASCADE,
	FOREIGN KEY(parent_round_id) REFERENCES rounds (id) ON DELETE SET NULL
);

CREATE TABLE trials (
	id INTEGER NOT NULL,
	study_id INTEGER NOT NULL,
	round_id INTEGER,
	number INTEGER NOT NULL,
	state VARCHAR(16) NOT NULL,
	hparams JSON NOT NULL,
	attempt INTEGER NOT NULL,
	worker VARCHAR(200),
	lease_expires_at DATETIME,
	step INTEGER NOT NULL,
	epoch FLOAT NOT NULL,
	best_value FLOAT,
	last_value FLOAT,
	parent_id INTEGER,
	parent_step INTEGER,
	parent_checkpoint_id INTEGER,
	error TEXT,
	created_at DATETIME NOT NULL,
	started_at DATETIME,
	ended_at DATETIME,
	PRIMARY KEY (id),
	UNIQUE (study_id, number),
	FOREIGN KEY(study_id) REFERENCES studies (id) ON DELETE CASCADE,
	FOREIGN KEY(round_id) REFERENCES rounds (id) ON DELETE SET NULL,
	FOREIGN KEY(parent_id) REFERENCES trials (id) ON DELETE SET NULL,
	FOREIGN KEY(parent_checkpoint_id) REFERENCES checkpoints (id) ON DELETE SET NULL
);

CREATE INDEX ix_trials_state_id ON trials (state, id);

CREATE INDEX ix_trials_study_state ON trials (study_id, state);

CREATE TABLE metrics (
	id INTEGER NOT NULL,
	trial_id INTEGER NOT NULL,
	name VARCHAR(100) NOT NULL,
	step INTEGER NOT NULL,
	value FLOAT NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT uq_metrics_trial_name_step UNIQUE (trial_id, name, step),
	FOREIGN KEY(trial_id) REFERENCES trials (id) ON DELETE CASCADE
);

CREATE TABLE events (
	id INTEGER NOT NULL,
	trial_id INTEGER NOT NULL,
	kind VARCHAR(16) NOT NULL,
	payload JSON NOT NULL,
	requested_at DATETIME NOT NULL,
	applied_step INTEGER,
	applied_at DATETIME,
	PRIMARY KEY (id),
	FOREIGN KEY(trial_id) REFERENCES trials (id) ON DELETE CASCADE
);

CREATE INDEX ix_events_trial_applied ON events (trial_id, applied_at);

CREATE TABLE checkpoints (
	id INTEGER NOT NULL,
	trial_id INTEGER NOT NULL,
	step INTEGER NOT NULL,
	epoch FLOAT NOT NULL,
	hparams JSON NOT NULL,
	path VARCHAR(500) NOT NULL,
	bytes INTEGER NOT NULL,
	sha256 VARCHAR(64) NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (trial_id, step),
	FOREIGN KEY(trial_id) REFERENCES trials (id) ON DELETE CASCADE
);
