"""``rewrap``: the operator's command line. It needs only the rewrap package against real AWS and NCP;
``--local``, ``rewrap emulator`` and ``rewrap demo`` need the local extra (``pip install 'rewrap[local]'``)."""
