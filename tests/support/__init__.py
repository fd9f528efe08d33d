"""What tests share: real servers in subprocesses (servers), the JSON specs they register (specs), and models
launched for a test's length and always terminated (models.launched)."""
