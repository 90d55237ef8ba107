"""The operator-runtime contract: what one process writes and the other reads.

Both packages import it; it imports neither, and nothing but pydantic. The runtime config
file (`config`), the termination-message reason words (`reasons`), the runtime's
`/status` document (`status`) and the validation judgement (`judge`) live here once, so
the two sides cannot drift apart.
"""
