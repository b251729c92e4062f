"""The agent runtime every agent service uses: an agent folder only says what makes it itself."""
