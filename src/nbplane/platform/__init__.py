"""What nbplane needs of the machine it runs on: isolating the processes it starts for users."""
