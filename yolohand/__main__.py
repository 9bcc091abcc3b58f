from yolohand.cli import main

main()
