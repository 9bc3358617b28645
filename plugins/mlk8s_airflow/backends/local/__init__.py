"""The local backend: a pod's main container run as a local process, built from the very same ``V1Pod``.

This is what makes a DAG testable with no cluster: KubernetesPodOperator's own machinery builds the pod spec;
instead of sending it to an API server, ``process_spec`` translates the main container into an exec array,
an environment (``env``) and a working directory, ``process`` runs it as the kubelet would (log lines streamed,
exit code mapped, SIGTERM + grace + SIGKILL, the XCom file read), ``disruption`` simulates an eviction and
``scratch`` gives each pod its own directories.
"""
