"""panda-caviar for your own training loop: the dashboard samples, prunes, pauses, adjusts and
forks trials that run in your processes (PyTorch, scikit-learn, anything).

Create a study whose trials you run (task ``"external"``; the dashboard's new-study form
offers it as "your own training loop"), then hand over your loop::

    import pandacaviar

    def train(trial):
        model = make_model(trial.hparams["learning_rate"], trial.hparams["hidden_units"])
        if (data := trial.restore()) is not None:     # a resumed or forked trial
            model.load_bytes(data)
        for epoch in range(int(trial.epoch), trial.epochs):
            loss = model.fit_one_epoch(lr=trial.hparams["learning_rate"])  # adjustable live
            trial.report(epoch=epoch + 1, train_loss=loss, dev_accuracy=model.score_dev())
            if trial.should_stop:                      # paused, stopped or pruned
                return

    pandacaviar.run(train, study=3, server="http://127.0.0.1:8000",
                    save=lambda: model_bytes())       # a pause checkpoints with it

Or keep your loop::

    client = pandacaviar.Client("http://127.0.0.1:8000")
    with client.trial(3) as trial:
        ...; trial.report(epoch=1, dev_accuracy=0.91); ...

    trial = client.ask(3)          # ask / tell, for code that cannot hand control over
    client.tell(trial, 0.93)

Every report may answer with a control from the dashboard: an adjustment changes
``trial.hparams`` (and calls ``on_update``), a pause or early stopping sets
``trial.should_stop``. See :class:`Trial` and :class:`Client`.
"""

from pandacaviar.client import Client, run
from pandacaviar.trial import Trial

__all__ = ["Client", "Trial", "run"]
