"""The library's whole jobs, as the command line runs them: each option set as a typed record (choices), and the
orchestration of a job from a model file to a published plan folder (partition)."""
