"""io: how st-deploy writes, whatever the stage: atomic files and folders (atomic), and the
tables the CLI and bench print (tables). Every stage may import it; it imports no stage."""
