"""Loads `murmur serve`'s web page in headless Chromium (Selenium with the Debian
`chromium` and `chromium-driver` packages), chats, and prints what it saw as one JSON object.

usage: page.py BASE_URL SCREENSHOT.png

It sends two messages and waits for each streamed reply, then for the analyzer's note made
during the first turn to show as delivered in the live feed; it saves a screenshot of the
page at that point. The Rust test (tests/browser.rs) checks the printed observations.
"""

import json
import shutil
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

base_url, screenshot = sys.argv[1], sys.argv[2]

options = webdriver.ChromeOptions()
options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
for arg in (
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--window-size=1280,760",
    "--force-device-scale-factor=1",
):
    options.add_argument(arg)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
driver = webdriver.Chrome(options=options, service=service)
seen = {}
try:
    driver.get(base_url + "/")
    seen["title"] = driver.title
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-session"))
    seen["session"] = driver.find_element(By.TAG_NAME, "body").get_attribute("data-session")

    def say(text):
        box = driver.find_element(By.ID, "input")
        wait.until(lambda d: box.is_enabled())
        done = '#messages .msg.assistant[data-done="true"]'
        count = len(driver.find_elements(By.CSS_SELECTOR, done))
        box.send_keys(text)
        driver.find_element(By.ID, "send").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, done)) > count)
        return driver.find_elements(By.CSS_SELECTOR, done)[-1].text

    seen["reply1"] = say("Which line runs from Oslo to Halden?")
    # The analyzer runs in the background; wait for its note as a person would read it.
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#feed .entry.injection")))
    seen["reply2"] = say("When did it open?")
    delivered = '#feed .entry.injection[data-status="delivered"]'
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, delivered)))
    card = driver.find_element(By.CSS_SELECTOR, delivered)
    seen["injection"] = {
        "analyzer": card.get_attribute("data-analyzer"),
        "text": card.find_element(By.CSS_SELECTOR, ".text").text,
        "status": card.find_element(By.CSS_SELECTOR, ".status").text,
    }
    seen["runs"] = [
        e.get_attribute("data-analyzer")
        for e in driver.find_elements(By.CSS_SELECTOR, "#feed .entry.run")
    ]
    seen["notes"] = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#messages .note")]
    seen["user_messages"] = [
        e.text for e in driver.find_elements(By.CSS_SELECTOR, "#messages .msg.user")
    ]
    driver.save_screenshot(screenshot)
    seen["screenshot"] = screenshot
except Exception:
    # What the page showed and logged, for the failing test's message.
    print("--- page when it failed ---", file=sys.stderr)
    for part in ("messages", "feed", "session"):
        try:
            html = driver.find_element(By.ID, part).get_attribute("innerHTML")
            print(f"#{part}: {html}", file=sys.stderr)
        except Exception as e:  # the page may not have loaded at all
            print(f"#{part}: {e}", file=sys.stderr)
    for entry in driver.get_log("browser"):
        print(f"console: {entry}", file=sys.stderr)
    raise
finally:
    driver.quit()

print(json.dumps(seen))
